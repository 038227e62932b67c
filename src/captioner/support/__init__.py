"""Evidence for and against the objects a caption names (issue 23): a word-presence head on the pooled
encoder features (`head`), merged with the ImageNet classifier's word probabilities, and the decoding
penalty it gives to object words the photo does not support (`penalty`)."""
