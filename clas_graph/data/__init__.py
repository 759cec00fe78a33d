"""Data readers: the offline Bible (`bible`), parallel corpora (`corpora`), one module per task dataset (`xnli`,
`xquad`: items, prompts, and in `xquad` the one reader of XQuAD rows), what those share (`templates`: prompt
templates; `source`: hub or local file per language, argument and column checks), local files (`files`), and
the tables of the languages each dataset has (`languages`). Import from the modules themselves."""
