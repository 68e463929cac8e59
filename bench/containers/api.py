"""The Flask tutorial's prediction service, as its README describes it: the model from the
pickle MODEL_FILE names, GET /prediction?slength=..&swidth=..&plength=..&pwidth=.. answering
{"prediction": ...} on port 5000. The baseline of bench/containers/flask.Containerfile."""

import os
import pickle

from flask import Flask, jsonify, request

with open(os.environ["MODEL_FILE"], "rb") as f:
    model = pickle.load(f)

app = Flask(__name__)


@app.route("/prediction")
def prediction():
    row = [[float(request.args[k]) for k in ("slength", "swidth", "plength", "pwidth")]]
    return jsonify({"prediction": model.predict(row).tolist()[0]})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
