"""Children's stories from the small world (`minilm.world`), the "books" of the corpus:

- `grammar`: the sentence templates of every role, and reading them backwards (`accepts`, `story_vocabulary`);
- `writer`: the cast of a story (where the job-gender bias is planted), its rendering and its facts;
- `books`: a story wrapped as an e-book, with front matter and licence to strip.
"""
