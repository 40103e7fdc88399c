"""Conventions shared by every REST endpoint of both apps: paging and the OpenAPI schema.

A leaf for apps.ingest and apps.read (it imports neither).
"""
