"""Hyper-parameter search for pram with Ray Tune and Optuna: `python tune/search.py --help`."""
