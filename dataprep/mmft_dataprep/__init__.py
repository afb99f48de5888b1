"""Dataset preparation workload: labels CSV + images -> split chat_template JSONL, resized images, stats.json."""
