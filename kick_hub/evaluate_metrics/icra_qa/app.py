import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("llmkick/icra-qa")
launch_gradio_widget(module)
