"""Workflow modules written in the original manager's style, and the suite that runs them."""
