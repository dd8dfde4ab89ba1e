"""Training: textgen.train() (run.py), the fit loop, its callbacks, checkpoints and resume, the hardware."""
