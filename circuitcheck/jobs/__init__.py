"""Jobs and executors: each (file, model) pair of ``run``, ``baseline`` and ``compare`` is a job, run in this
process (``--executor local``) or as a Ray task (``--executor ray``), and its result may come from the result
cache (``--cache``). Sits between the comparison (which hands its variants here) and the report."""
