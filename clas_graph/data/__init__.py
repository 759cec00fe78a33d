"""Data readers: the offline Bible (`bible`), parallel corpora (`corpora`), XNLI/XQuAD task items and prompts
(`tasks`), and the tables of the languages each dataset has (`languages`). Import from the modules themselves."""
