"""How fast this CPU trains autoenc's configs with our loop against Keras `fit`:
`python -m benchmarks` from the repository root (docs/speed.md says how to read it).

Modules: `__main__` (the command), `arms` (what is timed), `rounds` (timing and interleaved
rounds), `report` (ratios, targets, the table), `machine` (the CPU line, peak RSS) and
`whole_run` (a whole training run in a child process).
"""
