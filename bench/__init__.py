"""Side-by-side benchmark of this registry against CNCF Distribution (Debian's ``docker-registry``).

``make bench`` (or ``.venv/bin/python -m bench``) starts both servers on loopback, drives the same
workloads against each, alternating them over several repeats, and prints a table of medians and
ranges with the ratio and the target of each row; the results also go to ``docs/bench.png``, the
results block of ``docs/benchmarks.md`` and ``bench/.work/results.json``. See docs/benchmarks.md.
"""
