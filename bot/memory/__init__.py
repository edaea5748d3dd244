"""What Mnemo remembers and how it is put into a prompt: the learners, recall, the prompt."""
