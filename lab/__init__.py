"""The hybrid-cloud lab (``scripts/lab``): the article's four stages replayed end to end on
one machine, with network namespaces, a private dockerd, Redis, httpdns nodes, rolling
controllers and client regions, and a report of what the clients saw.

Modules: ``scenario`` (the stages as data), ``report`` (report.json, plot, summary),
``client`` (one client region), ``net`` (namespaces), ``docker`` (the private daemon),
``procs`` (the processes), ``run`` (the runner and its cleanup).
"""
