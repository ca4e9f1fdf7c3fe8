"""Recommendation explanations from reviews (issue #20 §4): item profiles of aspects and their sentiment,
user preferences (stated, or read from the user's own reviews), a ranked list with an extractive
explanation citing the aspects ("推荐：屏幕很清晰；注意：电池不耐用"), every citation traceable to review ids.

    from zhixing.apps.recommend import SentimentRecipe, train_sentiment, build_store, Store
    train_sentiment(SentimentRecipe.from_yaml("configs/recommend/sentiment.yaml"), "runs/recommend-sentiment")
    build_store(["online_shopping_10_cats.csv", "外卖=waimai_10k.csv"], "runs/recommend-sentiment",
                "runs/recommend.sqlite")
    Store("runs/recommend.sqlite").rank(["屏幕", "电池"], avoid=["发热"])

Parts: reviews.py (reading, clauses, what an item is), aspects.py (mining the lexicon, finding mentions),
sentiment.py (the clause classifier trained by the library), profiles.py (the store, ranking,
explanations, faithfulness), evaluate.py (annotated-sample accuracy, coverage), http.py (routes + page).
"""

from zhixing.apps.recommend.aspects import Lexicon, Mention, find_mentions, mine_aspects
from zhixing.apps.recommend.profiles import Citation, Ranked, Store, build_store, faithfulness, user_profile
from zhixing.apps.recommend.reviews import Review, clauses, read_all, read_reviews
from zhixing.apps.recommend.sentiment import ClauseSentiment, SentimentRecipe, train_sentiment

__all__ = [
    "Citation",
    "ClauseSentiment",
    "Lexicon",
    "Mention",
    "Ranked",
    "Review",
    "SentimentRecipe",
    "Store",
    "build_store",
    "clauses",
    "faithfulness",
    "find_mentions",
    "mine_aspects",
    "read_all",
    "read_reviews",
    "train_sentiment",
    "user_profile",
]
