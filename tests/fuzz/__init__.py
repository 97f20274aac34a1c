"""The fuzz suite (issue 9): grammar-based inputs for every entry point, and the properties
they must keep. ``make test`` runs a few examples of each; ``make fuzz`` runs the large
count-every-failure driver, benchmarks/fuzz_run.py."""
