"""Shared options for the benchmarks (each area adds its own options here, one block per area)."""


def pytest_addoption(parser):
    # engine: workload (c), 10,000 x 1,000,000 codes, is opt-in
    parser.addoption("--large", action="store_true", default=False,
                     help="also run the large benchmark workloads (minutes, GBs of RAM)")
