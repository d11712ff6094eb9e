"""Shared options and reporting for the benchmarks (each area adds its own block)."""


def pytest_addoption(parser):
    # engine: workload (c), 10,000 x 1,000,000 codes, is opt-in
    parser.addoption("--large", action="store_true", default=False,
                     help="also run the large benchmark workloads (minutes, GBs of RAM)")


def pytest_configure(config):
    config.bench_summary_lines = []  # benchmark modules append readable summary lines (speed-ups, loadavg)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.bench_summary_lines:
        terminalreporter.section("benchmark summary")
        for line in config.bench_summary_lines:
            terminalreporter.write_line(line)
