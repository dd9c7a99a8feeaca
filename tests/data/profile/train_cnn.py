import json, os, sys, time
import numpy as np
import keras
from keras import backend as K
from keras.models import Sequential
from keras.layers import Conv2D, BatchNormalization, Activation, MaxPooling2D, Flatten, Dense, Dropout

fmt, n, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
K.set_image_data_format(fmt)
rng = np.random.RandomState(0)
x = rng.randint(0, 256, size=(n, 32, 32, 3)).astype("uint8")
y = rng.randint(0, 10, size=(n,))
if fmt == "channels_first":
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
x = x.astype("float32") / 255.0
y = keras.utils.to_categorical(y, 10)
shape = x.shape[1:]
m = Sequential()
m.add(Conv2D(32, (3, 3), padding="same", input_shape=shape)); m.add(BatchNormalization()); m.add(Activation("relu"))
m.add(Conv2D(32, (3, 3), padding="same")); m.add(BatchNormalization()); m.add(Activation("relu")); m.add(MaxPooling2D())
m.add(Conv2D(64, (3, 3), padding="same")); m.add(BatchNormalization()); m.add(Activation("relu")); m.add(MaxPooling2D())
m.add(Conv2D(64, (3, 3), padding="same")); m.add(BatchNormalization()); m.add(Activation("relu")); m.add(MaxPooling2D())
m.add(Flatten()); m.add(Dense(128, activation="relu")); m.add(Dropout(0.5)); m.add(Dense(10, activation="softmax"))
m.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
times = []
class T(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, e, logs=None): times.append(time.perf_counter() - self.t)
m.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[T()])
print(json.dumps({"fmt": fmt, "epoch_s": times}))
