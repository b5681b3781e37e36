"""The paper exchange's default markets (also served by `fake-exchange` and picked by the demo signals)."""

# Paper markets: a plausible USDⓈ-M universe, prices as of the project's start.
PAPER_PRICES = {
    "BTCUSDT": 67_000.0, "ETHUSDT": 2_600.0, "BNBUSDT": 600.0, "SOLUSDT": 150.0, "XRPUSDT": 0.55,
    "DOGEUSDT": 0.12, "ADAUSDT": 0.35, "AVAXUSDT": 27.0, "LINKUSDT": 11.0, "DOTUSDT": 4.2,
    "LTCUSDT": 66.0, "NEOUSDT": 10.0, "FILUSDT": 3.6, "ALGOUSDT": 0.13, "ALICEUSDT": 0.6,
    "FORMUSDT": 0.8132, "ATOMUSDT": 4.5, "NEARUSDT": 4.8, "ARBUSDT": 0.55, "OPUSDT": 1.6,
}
