"""The sources of stage 1, in the order the stage gathers them:

- `site`: the local website of the town's paper (its text, its pages, its server);
- `crawl`: a polite crawler; `extract`: the main text of each crawled page (the "web" domain);
- `stories`: children's stories from the small world (`minilm.world`), some wrapped as e-books ("books");
- `techdocs`: docstrings and reference topics of the installed Python ("docs");
- `code`: Python source files of the standard library ("code");
- `download`: online corpora (TinyStories, Project Gutenberg), opt-in, never used by default.
"""
