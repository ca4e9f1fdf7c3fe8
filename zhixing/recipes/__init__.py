"""Recipes: whole runs composed from the library's layers, read top to bottom.

- `pretrain.run_recipe`: a YAML recipe from corpus to trained model (tokenizer -> shards -> model ->
  objective -> Trainer);
- `quickstart.run_quickstart`: the offline tour (a Chinese GPT on People's Daily in minutes);
- `sentiment.quick_sentiment`: the tour's second stage, a Chinese sentiment classifier.

They sit above train/ and tasks/ and below the command layer (zhixing.cli), which only parses flags.
"""
