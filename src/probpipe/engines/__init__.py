"""Engine connections shared by backends: the Prefect API, Ray, Dask.

Each module imports its engine only inside functions, and each resource is
started at most once per process, reference-counted, and stopped only if
probpipe started it. Backends (shipped or plugins) use these instead of
calling ``ray.init`` / ``LocalCluster`` / Prefect's server themselves.
"""
