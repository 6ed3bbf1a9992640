import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("llmkick/mcq-reasoning")
launch_gradio_widget(module)
