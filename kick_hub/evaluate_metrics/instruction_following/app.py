import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("llmkick/instruction-following")
launch_gradio_widget(module)
