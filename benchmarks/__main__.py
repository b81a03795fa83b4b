"""`python -m benchmarks`: the throughput table (`benchmarks.throughput`)."""

from benchmarks.throughput import main

main()
