"""Applications built on fxprune's public API: ArtNet style transfer and the cerebral-palsy skeleton
model, with their data, training and read-outs. The core never imports them."""
