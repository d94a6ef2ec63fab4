"""fulfill's tooling, shipped in the same distribution as the service but never imported by it: the
load test and its bare-DBOS floor, the end-to-end check, the demo, the local Salesforce server, and
the launcher of ``fulfill serve`` processes. Its commands join the ``fulfill`` command line through
:func:`fulfill_tools.cli.register`."""
