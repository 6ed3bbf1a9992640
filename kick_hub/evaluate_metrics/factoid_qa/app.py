import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("llmkick/factoid-qa")
launch_gradio_widget(module)
