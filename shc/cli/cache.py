"""shc-cache: the decoded-image cache of image-file datasets — build it ahead of training, list it, clear it.

    shc-cache build --dataset coco --data-root /data/coco     # decode every image once, now
    shc-cache list                                             # the stores, their size and images
    shc-cache clear                                            # remove them all (they are rebuilt on demand)

Training builds the cache by itself on its first load of a dataset; ``build`` does that ahead of time, e.g. on
a login node before a GPU job. ``--image-cache DIR`` (default: $SHC_CACHE_DIR/images or ~/.cache/shc/images) as in shc-train.
"""
from __future__ import annotations

import argparse
import sys

from shc.cli._errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shc-cache", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    commands = p.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="decode a dataset's images into the cache now")
    build.add_argument("--dataset", required=True, help="an image-file dataset (coco, stanford-cars-a, custom, ...)")
    build.add_argument("--data-root", "--data_root", dest="data_root", default=None, help="where its files are")
    build.add_argument("--data-option", dest="data_options", action="append", default=[], metavar="KEY=VALUE",
                       help="dataset option, repeatable (e.g. image_root=DIR), as in shc-train")
    build.add_argument("--resize", type=int, default=None, metavar="PX", help="as in shc-train (default: 256)")
    build.add_argument("--crop", type=int, default=None, metavar="PX", help="as in shc-train (default: 224)")
    build.add_argument("--workers", type=int, default=None, help="decoding threads (default: the cores)")
    build.add_argument("--skip-unreadable", action="store_true",
                       help="report unreadable images and succeed (default: they are an error)")
    for sub in (build, commands.add_parser("list", help="the stores: images, size, when built"),
                commands.add_parser("clear", help="remove every store (do not run while a build is running)")):
        sub.add_argument("--image-cache", "--image_cache", dest="image_cache", default=None, metavar="DIR",
                         help="the cache directory (default: $SHC_CACHE_DIR/images or ~/.cache/shc/images)")
    return p


def run(args) -> None:
    from shc.data import image_cache

    cache_dir = image_cache.resolve_cache_dir(args.image_cache)
    if args.command == "build":
        _build(args)
    elif args.command == "list":
        stores = image_cache.list_stores(cache_dir)
        for s in stores:
            bad = f", {len(s.errors)} unreadable" if s.errors else ""
            print(f"{s.path.name}  {len(s):>9,} images{bad}  {image_cache.human_size(s.nbytes):>9}  "
                  f"{s.resize_size}px  built {s.created}  {s.images_under}")
        total = sum(s.nbytes for s in stores)
        print(f"{len(stores)} store(s), {image_cache.human_size(total)} in {cache_dir}")
    else:
        print(f"freed {image_cache.human_size(image_cache.clear_cache(cache_dir))} in {cache_dir}")


def _build(args) -> None:
    from shc.train.options import image_size_options, parse_data_options
    from shc.data import load_dataset
    from shc.data.image_cache import human_size
    from shc.data.registry import READS_FILES, canonical_name, loader_settings

    if canonical_name(args.dataset) not in READS_FILES:
        raise ValueError(f"{args.dataset} holds its images in memory already: there is nothing to cache")
    settings, options = loader_settings({**parse_data_options(args.data_options),
                                         **image_size_options(args.resize, args.crop)},
                                        image_cache=args.image_cache, workers=args.workers,
                                        skip_unreadable=args.skip_unreadable)
    if settings["image_cache"] == "off":
        raise ValueError("--image-cache off: there is no cache to build")
    ds = load_dataset(args.dataset, data_root=args.data_root, **settings, **options)
    store = ds.train.store
    print(f"{ds.name}: {len(store):,} images ({len(ds.skipped)} unreadable) in {store.path} "
          f"({human_size(store.nbytes)})")


def main(argv=None) -> int:
    return run_cli("shc-cache", run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
