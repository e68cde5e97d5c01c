"""The preparation steps of stage 1, in pipeline order; each takes documents and returns a `StepResult`:

- `clean`: book and page boilerplate, broken characters;
- `language`: each document's language (naive Bayes on character n-grams), pages in untrained languages
  removed, and the balance of the trained ones (temperature sampling);
- `quality`: junk and generated documents (Gopher and C4 rules);
- `toxicity`: insults, threats and harassment, weighed in context;
- `pii`: e-mail addresses, phone numbers, IP addresses and secrets, masked;
- `dedup`: exact copies, then near copies (MinHash and LSH); the one shingle and Jaccard measure;
- `bias`: the audit of job-gender associations that the balance step reads;
- `balance`: counterfactual balance of those associations, and the domain mixture.
"""
