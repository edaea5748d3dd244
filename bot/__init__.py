"""Mnemo: a Discord chatbot that remembers."""
