"""Dialogs: pull."""
