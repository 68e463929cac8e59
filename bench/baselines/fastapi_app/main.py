# The FastAPI tutorial's server (shared/seeds: "Adding batching to the server", the wine
# classifier), unchanged except for the model: the iris RandomForestClassifier, 4 features per
# row. The pickle's path comes from IRIS_PICKLE (the tutorial hard-codes /app/wine.pkl).
import os
import pickle
import numpy as np
from typing import List
from fastapi import FastAPI
from pydantic import BaseModel, conlist

app = FastAPI(title="Predicting Iris Species")


# Represents a batch of flowers
class Iris(BaseModel):
    batches: List[conlist(float, min_length=4, max_length=4)]


@app.on_event("startup")
def load_clf():
    # Load classifier from pickle file
    with open(os.environ.get("IRIS_PICKLE", "/app/iris.pkl"), "rb") as file:
        global clf
        clf = pickle.load(file)


@app.get("/")
def home():
    return "Congratulations! Your API is working as expected. Now head over to http://localhost:80/docs."


@app.post("/predict")
def predict(iris: Iris):
    batches = iris.batches
    np_batches = np.array(batches)
    pred = clf.predict(np_batches).tolist()
    return {"Prediction": pred}
