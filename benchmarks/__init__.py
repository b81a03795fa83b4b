"""Speed and same-answer benchmarks of autoenc's training loop, run from the repository root.

    python -m benchmarks                        # throughput table: our loop against Keras fit
    python -m benchmarks.same_answers           # do the speed switches keep val_loss?
    python -m benchmarks.where_time_goes        # layer, kernel and pipeline costs
    python -m benchmarks.compare_commits OLD NEW    # is NEW faster than OLD, with the same losses?
    python -m benchmarks.launch_vs_fit          # launch.py's epochs against the book's fit
    python -m benchmarks.quality_bar            # time to the denoiser's bar in each precision

Each prints its figures and the CPU they were measured on (`benchmarks.cpu`); how to read
them and the latest figures per CPU are in docs/speed.md.
"""
