"""The composition root: settings, the wiring of each profile, the ``replenish`` CLI, and
the scripts that set up the machine and start servers."""
