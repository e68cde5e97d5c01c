"""The truth the filters are scored against:

- `defects`: the defects planted into the gathered documents, each recorded in the documents' labels;
- `scoring`: precision and recall of every preparation step against those labels.
"""
