"""The HTML report of a run (`nonn report RUN_DIR`): one self-contained page made from the run's artifacts."""
