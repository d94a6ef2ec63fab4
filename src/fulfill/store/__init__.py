"""Adapters for the relational store (SQLite by default, PostgreSQL to scale out)."""
