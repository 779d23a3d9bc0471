"""The polyaudit pytest plugin, as a package:

    state      stash keys, the row key and the claim outcomes (the bottom of the plugin)
    recorder   collects report rows from test reports
    auditor    the per-test `audit` handle: measure once, decide, record the row
    gate       the --baseline gate
    writer     the run's report files and terminal table
    hooks      options, hooks and fixtures (the pytest11 entry point)

Nothing here is imported unless pytest loads the plugin; `hooks` imports its implementations lazily.
"""
