"""tf.Transform preprocessing shared by training and scoring (scoring runs it inside the model)."""
