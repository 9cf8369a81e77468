"""Findings: rules that name what is wrong, with the culprit, the evidence and the threshold."""
