"""The model server: the OpenAI-compatible client, its slots, tokens and text clean-up."""
