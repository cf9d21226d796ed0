"""The workflow engine's machinery; handler authors use incidents.workflow instead."""
