"""The local website the crawler crawls, the Millbrook Gazette:

- `content`: what the paper writes (its town's text, and the drafts of its pages, whose lines are the truth);
- `pages`: the drafts in HTML layouts, the traps every crawler meets, and `build_site`;
- `server`: `serve(site)` on 127.0.0.1.
"""
