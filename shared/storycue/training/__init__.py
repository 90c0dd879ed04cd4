"""Training: cached frozen-backbone features and the heads of each emotion-space family."""
