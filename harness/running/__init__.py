"""Running cases: configuration, the runner that writes records, launch on a cluster, tuning, profiling."""
