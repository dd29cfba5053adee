"""Programs around training: the speed benchmark (bench), the benchmark suite (suite) and
learning curves / results tables from work directories (plot)."""
