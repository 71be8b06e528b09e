"""Tenant safety (issue 14): one module per class of finding; each test fails on the code before the fix."""
