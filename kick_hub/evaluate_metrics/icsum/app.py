import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("llmkick/icsum")
launch_gradio_widget(module)
