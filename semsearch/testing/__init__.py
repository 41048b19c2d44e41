"""Test doubles that stand in for services semsearch talks to, for tests and benchmarks.

They serve real HTTP on 127.0.0.1, so the code under test runs its real client.
"""
