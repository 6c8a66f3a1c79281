"""The book's networks: chapter 5's :class:`TwoLayerNet`, chapter 6's
:class:`MultiLayerNet`/:class:`MultiLayerNetExtend`, chapter 7's
:class:`SimpleConvNet` and chapter 8's :class:`DeepConvNet`; beyond the book,
:class:`ResNet`, a small residual network."""
from fastzero.nets.deep_convnet import DeepConvNet
from fastzero.nets.multi_layer_net import MultiLayerNet
from fastzero.nets.multi_layer_net_extend import MultiLayerNetExtend
from fastzero.nets.resnet import ResNet
from fastzero.nets.simple_convnet import SimpleConvNet
from fastzero.nets.two_layer_net import TwoLayerNet

__all__ = ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet",
           "ResNet"]
