"""Stage modules: one per `dvc.yaml` stage, thin I/O around the pure core."""
