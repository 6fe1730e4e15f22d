"""The job worker: `phymem worker` claims queued jobs from the database and runs each as a
Ray task in a fresh process (see dispatcher.py and task.py).

Nothing here imports Ray or TensorFlow at module level except `task.py` and
`dispatcher.py`, which only the worker itself loads.
"""
