"""The vision pipeline: pixels in, faces (boxes, landmarks, embeddings, attributes) out.

Nothing here knows about HTTP, the database or the index; callers hand in decoded RGB arrays.
"""
